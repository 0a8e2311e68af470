"""Attacks through the pure standard modules (machine/stdlib/): their values and functions
must lead to no host object, run no loop without fuel, allocate nothing unbounded, and share
no state between programs. Each attack is refused before running or fails inside the program
with a Python error, and leaves no trace on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.machine.api import Limits
from security.attack import attempt, no_host_effect, stopped

ESCAPES = {
    # -- itertools --------------------------------------------------------------------------
    # the iterators are host objects underneath: their internals stay out of reach
    "itertools_reduce": 'import itertools\nprint("{0.__reduce__}".format(itertools.count()))\n',
    "itertools_reduce_static": "import itertools\nprint(itertools.count().__reduce__())\n",
    "itertools_setstate": 'import itertools\nprint("{0.__setstate__}".format(itertools.cycle("a")))\n',
    "itertools_type_mro": 'import itertools\nprint("{0.__mro__}".format(type(itertools.chain())))\n',
    "itertools_type_base": 'import itertools\nprint("{0.__base__}".format(itertools.chain))\n',
    "itertools_new": 'import itertools\nprint("{0.__new__}".format(itertools.product))\n',
    "itertools_classmethod_self": 'import itertools\nprint("{0.__self__}".format(itertools.chain.from_iterable))\n',
    "itertools_classmethod_func": 'import itertools\nprint("{0.__func__.__globals__}".format(itertools.chain.from_iterable))\n',
    "itertools_tee_internals": """
import itertools
a, b = itertools.tee([1, 2])
T = type(a)
print(T([3]))
""",
    "itertools_grouper_type": """
import itertools
k, g = next(itertools.groupby("aa"))
print(type(g)(itertools.groupby("b"), "b"))
""",
    "itertools_pairwise_zip": 'import itertools\nprint("{0.__class__.__bases__}".format(itertools.pairwise("ab")))\n',
    "itertools_module_of_type": 'import itertools\nprint("{0.__module__}".format(itertools.chain))\n',
    # starmap/accumulate with types as callables create nothing new
    "itertools_starmap_type": 'import itertools\nprint(list(itertools.starmap(type, [("C", (), {})])))\n',
    "itertools_accumulate_type": 'import itertools\nprint(list(itertools.accumulate([1, 2, 3], type)))\n',
    # -- operator: attrgetter and methodcaller read through the allow-list --------------------
    # (the first published exploit of this project was built from operator.attrgetter)
    "attrgetter_class": 'import operator\nprint(operator.attrgetter("__class__")(1))\n',
    "attrgetter_dotted_mro": 'import operator\nprint(operator.attrgetter("__class__.__mro__")(1))\n',
    "attrgetter_globals": 'import operator\ndef f():\n    pass\nprint(operator.attrgetter("__globals__")(f))\n',
    "attrgetter_module_dict": 'import operator, json\nprint(operator.attrgetter("__dict__")(json))\n',
    "attrgetter_module_loader": 'import operator, json\nprint(operator.attrgetter("__loader__")(json))\n',
    "attrgetter_property_fget": """
import operator, re
t = type(re.match("a", "a"))
print(operator.attrgetter("string.fget")(t))
""",
    "attrgetter_generator_frame": 'import operator\ng = (x for x in [1])\nprint(operator.attrgetter("gi_frame")(g))\n',
    "attrgetter_machine": """
import operator
from flowmetal import sleep
def w():
    sleep(0)
print(operator.attrgetter("_machine")(w))
""",
    "attrgetter_reserved": 'import operator\nprint(operator.attrgetter("_fm_getters")(operator.attrgetter("a")))\n',
    "attrgetter_type_descriptor": 'import operator\nprint(operator.attrgetter("real")(int))\n',
    "attrgetter_exception_traceback": """
import operator
try:
    1 / 0
except ZeroDivisionError as e:
    print(operator.attrgetter("__traceback__.tb_frame")(e))
""",
    "methodcaller_reduce": 'import operator\nprint(operator.methodcaller("__reduce__")(iter([1])))\n',
    "methodcaller_subclasses": 'import operator\nprint(operator.methodcaller("__subclasses__")(object))\n',
    "methodcaller_mro": 'import operator\nprint(operator.methodcaller("mro")(str))\n',
    "methodcaller_format_attr": 'import operator\nprint(operator.methodcaller("format", 1)("{0.__class__}"))\n',
    "methodcaller_private": ('import operator\nfrom collections import Counter\n'
                             'print(operator.methodcaller("_fm_own", {})(Counter()))\n'),
    "operator_call_type": 'import operator\nprint(operator.call(type, "C", (), {}))\n',
    "itemgetter_reduce": 'import operator\nprint("{0.__reduce__}".format(operator.itemgetter(1)))\n',
    "attrgetter_internals_format": 'import operator\nprint("{0._fm_getters}".format(operator.attrgetter("a")))\n',
    # -- functools ----------------------------------------------------------------------------
    "partial_func_globals": 'import functools\ndef f():\n    pass\nprint(functools.partial(f).func.__globals__)\n',
    "partial_func_globals_format": """
import functools
def f():
    pass
print("{0.func.__globals__}".format(functools.partial(f)))
""",
    "partial_dict": 'import functools\nprint("{0.__dict__}".format(functools.partial(len)))\n',
    "partial_setstate": 'import functools\np = functools.partial(len)\nprint("{0.__setstate__}".format(p))\n',
    "partial_of_type": 'import functools\nprint(functools.partial(type, "C", ())({}))\n',
    "partial_new": 'import functools\nprint("{0.__new__}".format(functools.partial))\n',
    "lru_cache_internal_dict": """
import functools
@functools.cache
def f(x):
    return x
print("{0._fm_cache}".format(f))
""",
    "lru_cache_wrapped": 'import functools\nf = functools.cache(len)\nprint("{0.__wrapped__}".format(f))\n',
    "lru_cache_func": 'import functools\nf = functools.cache(len)\nprint(f._fm_func)\n',
    "lru_cache_info_fields": 'import functools\nprint("{0._fields}".format(functools.cache(len).cache_info()))\n',
    "lru_cache_info_asdict": 'import functools\nprint(functools.cache(len).cache_info()._asdict())\n',
    "lru_cache_info_type": 'import functools\nprint(type(functools.cache(len).cache_info())(1, 2, 3, 4))\n',
    "wraps_renamed_inner": """
import functools
def f():
    pass
@functools.wraps(f)
def g():
    pass
print("{0._fm_fn.__globals__}".format(g))
""",
    "wraps_wrapped": 'import functools\ndef f():\n    pass\ng = functools.wraps(f)(len)\nprint("{0.__wrapped__}".format(g))\n',
    "cmp_to_key_internals": 'import functools\nprint("{0._fm_cmp}".format(functools.cmp_to_key(len)))\n',
    "reduce_internals": 'import functools\nprint("{0._fm_fn.__globals__}".format(functools.reduce))\n',
    "reduce_with_type": 'import functools\nprint(functools.reduce(type, [1, 2, 3]))\n',
    # -- collections ------------------------------------------------------------------------
    "defaultdict_factory_type": "from collections import defaultdict\nd = defaultdict(type)\nprint(d[1])\n",
    "defaultdict_factory_globals": """
from collections import defaultdict
def f():
    return 0
print("{0.default_factory.__globals__}".format(defaultdict(f)))
""",
    "defaultdict_missing": 'from collections import defaultdict\nprint("{0.__missing__}".format(defaultdict(list)))\n',
    "counter_private_method": 'from collections import Counter\nprint("{0._keep_positive}".format(Counter("a")))\n',
    "counter_our_internals": 'from collections import Counter\nprint("{0._fm_own}".format(Counter("a")))\n',
    "counter_class_dict": 'from collections import Counter\nprint("{0.__dict__}".format(Counter))\n',
    "chainmap_instance_dict": 'from collections import ChainMap\nprint("{0.__dict__}".format(ChainMap()))\n',
    "chainmap_view_mapping": 'from collections import ChainMap\nprint("{0._mapping}".format(ChainMap().keys()))\n',
    "odict_view_mapping": 'from collections import OrderedDict\nprint("{0.mapping}".format(OrderedDict().keys()))\n',
    "odict_view_mapping_static": "from collections import OrderedDict\nprint(OrderedDict().keys().mapping)\n",
    "deque_iterator_reduce": 'from collections import deque\nprint("{0.__reduce__}".format(iter(deque())))\n',
    "deque_method_self": 'from collections import deque\nprint("{0.__self__}".format(deque().append))\n',
    "counter_method_globals": 'from collections import Counter\nprint("{0.__globals__}".format(Counter.most_common))\n',
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "NameError")
    assert "0x" not in outcome.output


# Loops inside C that would otherwise run without fuel, and allocations they would make.
RUNAWAYS = {
    "dropwhile_forever": "from itertools import count, dropwhile\nprint(next(dropwhile(lambda x: True, count())))",
    "islice_seeks_forever": "from itertools import count, islice\nprint(next(islice(count(), 10**15, None)))",
    "chain_of_empties": "from itertools import chain, repeat\nprint(next(chain.from_iterable(repeat(()))))",
    "filterfalse_forever": "from itertools import filterfalse, repeat\nprint(next(filterfalse(None, repeat(1))))",
    "compress_forever": "from itertools import compress, repeat\nprint(next(compress(repeat(1), repeat(0))))",
    "groupby_endless_group": "from itertools import groupby, repeat\ng = groupby(repeat(1))\nnext(g)\nprint(next(g))",
    "zip_longest_of_empties": ("from itertools import zip_longest, filterfalse, repeat\n"
                               "print(next(filterfalse(None, zip_longest(repeat(0)))))"),
    "pairwise_forever": "from itertools import pairwise, dropwhile, count\nprint(next(dropwhile(bool, pairwise(count()))))",
    "cycle_forever": "from itertools import cycle, dropwhile\nprint(next(dropwhile(bool, cycle([1]))))",
    "product_consumed": "from itertools import product\nprint(sum(1 for _ in product(range(100), repeat=6)))",
    "counter_of_endless": "from collections import Counter\nfrom itertools import repeat\nprint(Counter(repeat(1)))",
    "counter_update_endless": "from collections import Counter\nfrom itertools import count\nCounter().update(count())",
    "deque_of_endless": "from collections import deque\nfrom itertools import count\ndeque(count(), maxlen=1)",
    "deque_extend_endless": "from collections import deque\nfrom itertools import count\ndeque().extendleft(count())",
    "reduce_endless": "import functools, operator\nfrom itertools import count\nfunctools.reduce(operator.add, count())",
    "countOf_endless": "import operator\nfrom itertools import count\nprint(operator.countOf(count(), -1))",
    "indexOf_endless": "import operator\nfrom itertools import count\nprint(operator.indexOf(count(), -1))",
    "contains_endless": "import operator\nfrom itertools import count\nprint(operator.contains(count(), -1))",
    "iadd_endless": "import operator\nfrom itertools import count\noperator.iadd([], count())",
    "defaultdict_of_endless": ("from collections import defaultdict\nfrom itertools import repeat\n"
                               "defaultdict(int, repeat((1, 2)))"),
}
HUGE = {
    "product_pool": "from itertools import product\nprint(next(product(range(10**12))))",
    "product_repeat": "from itertools import product\nprint(next(product('ab', repeat=10**12)))",
    "permutations_r": "from itertools import permutations\nprint(list(permutations('ab', 10**12)))",
    "combinations_r": "from itertools import combinations\nprint(list(combinations('ab', 10**12)))",
    "tee_n": "from itertools import tee\nprint(len(tee([], 10**12)))",
    "operator_pow": "import operator\nprint(operator.pow(3, 10**12))",
    "operator_ipow": "import operator\nprint(operator.ipow(3, 10**12))",
    "operator_lshift": "import operator\nprint(operator.lshift(1, 10**12))",
    "operator_mul": "import operator\nprint(len(operator.mul('ab', 10**10)))",
    "operator_imul": "import operator\nprint(len(operator.imul([1, 2], 10**10)))",
    "operator_rmul": "import operator\nprint(len(operator.mul(10**10, (1,))))",
    "deque_times": "from collections import deque\nprint(len(deque(range(10)) * 10**9))",
    "deque_times_in_place": "from collections import deque\nd = deque('ab')\nd *= 10**10\nprint(len(d))",
}


@pytest.mark.parametrize("name", sorted(RUNAWAYS))
def test_loops_in_c_use_fuel(name: str) -> None:
    outcome = attempt(RUNAWAYS[name], limits=Limits(fuel=300_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted"), outcome


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_allocations_are_refused_first(name: str) -> None:
    outcome = attempt(HUGE[name])
    assert outcome.error_line is not None and outcome.error_line.startswith("MemoryLimitExceeded"), outcome


def test_attrgetter_reads_what_programs_may_read() -> None:
    outcome = attempt('import operator, re\nm = re.match("(a)(b)", "ab")\n'
                      'print(operator.attrgetter("string", "re.pattern")(m), operator.methodcaller("group", 2)(m))\n')
    assert outcome.error_line is None and outcome.output == "('ab', '(a)(b)') b\n"


def test_operator_mod_writes_no_address() -> None:
    outcome = attempt('import operator\ndef f():\n    pass\nprint(operator.mod("%s %r", (f, f)))\n')
    assert outcome.output == "<function f> <function f>\n"
