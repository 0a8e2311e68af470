"""Attacks through heapq, bisect, copy, string, textwrap, statistics, fractions, decimal, queue and
pprint (machine/stdlib/): no host object, attribute or address reached through them, no loop in
C or host Python without fuel, nothing allocated past the limits, nothing shared between
programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.machine.api import Limits
from security.attack import attempt, no_host_effect, stopped

ESCAPES = {
    # -- string: Template and Formatter read no attribute a program could not ---------------
    "formatter_class": 'import string\nprint(string.Formatter().format("{0.__class__}", 1))\n',
    "formatter_mro": 'import string\nprint(string.Formatter().format("{0.real.__class__.__mro__}", 1))\n',
    "formatter_vformat_globals": ('import string\ndef f():\n    pass\n'
                                  'print(string.Formatter().vformat("{0.__globals__}", [f], {}))\n'),
    "formatter_get_field": 'import string\nprint(string.Formatter().get_field("0.__class__", [1], {}))\n',
    "formatter_nested_spec": 'import string\nprint(string.Formatter().format("{0:{1.__class__}}", 1, 2))\n',
    "formatter_getattr_internal": 'import string\nprint(string.Formatter().getattr_)\n',
    "formatter_getattr_format": 'import string\nprint("{0.getattr_}".format(string.Formatter()))\n',
    "formatter_via_str_format": 'import string\nprint("{0.format.__self__}".format(string.Formatter()))\n',
    "template_pattern": 'import string\nprint(string.Template("a").pattern)\n',
    "template_pattern_format": 'import string\nprint("{0.pattern}".format(string.Template("a")))\n',
    "template_flags": 'import string\nprint("{0.flags}".format(string.Template("a")))\n',
    "template_class_pattern": 'import string\nprint(string.Template.pattern)\n',
    "template_dict": 'import string\nprint("{0.__dict__}".format(string.Template("a")))\n',
    "template_invalid": 'import string\nprint("{0._invalid}".format(string.Template("a")))\n',
    "template_init_subclass": 'import string\nprint("{0.__init_subclass__}".format(string.Template))\n',
    "template_braced_attribute": 'import string\nprint(string.Template("${a.__class__}").substitute(a=1))\n',
    # -- heapq, bisect ----------------------------------------------------------------------
    "merge_internals": 'import heapq\nprint("{0._fm_heap}".format(heapq.merge([1])))\n',
    "merge_type_new": 'import heapq\nm = heapq.merge([1])\nprint(type(m)(([2],), None, False))\n',
    "heapq_private": 'import heapq\nprint(heapq._heapify_max)\n',
    "bisect_module_internal": 'import bisect\nprint("{0.__dict__}".format(bisect))\n',
    # -- copy: no host object rebuilt from its internals -------------------------------------
    "copy_iterator": "import copy\nprint(copy.copy(iter([1, 2])))\n",
    "deepcopy_iterator": "import copy\nprint(copy.deepcopy(iter([1, 2])))\n",
    "copy_itertools": "import copy, itertools\nprint(copy.deepcopy(itertools.count()))\n",
    "copy_partial": "import copy, functools\nprint(copy.deepcopy(functools.partial(len)))\n",
    "copy_exception": "import copy\nprint(copy.copy(ValueError('x')))\n",
    "copy_attrgetter": "import copy, operator\nprint(copy.copy(operator.attrgetter('a')))\n",
    "copy_generator": "import copy\nprint(copy.deepcopy(x for x in [1]))\n",
    "copy_reduce_ex": 'import copy\nprint("{0.__reduce_ex__}".format([1]))\n',
    "copy_private_dispatch": "import copy\nprint(copy._deepcopy_dispatch)\n",
    "copy_copiers": "import copy\nprint(copy._COPIERS)\n",
    # -- fractions, statistics ----------------------------------------------------------------
    "fraction_internals": 'from fractions import Fraction\nprint("{0._numerator}".format(Fraction(1, 3)))\n',
    "fraction_class": 'from fractions import Fraction\nprint("{0.__class__.__bases__}".format(Fraction(1)))\n',
    "fraction_classmethod_func": 'from fractions import Fraction\nprint("{0.from_float.__func__}".format(Fraction))\n',
    "fraction_numerator_descriptor": "from fractions import Fraction\nprint(Fraction.numerator)\n",
    "fraction_reduce": 'from fractions import Fraction\nprint("{0.__reduce__}".format(Fraction(1)))\n',
    "statistics_samples": 'import statistics\nprint("{0.samples}".format(statistics.NormalDist()))\n',
    "statistics_samples_static": "import statistics\nprint(statistics.NormalDist().samples(2))\n",
    "statistics_private": "import statistics\nprint(statistics._sum([1]))\n",
    "statistics_random": 'import statistics\nprint("{0.random}".format(statistics))\n',
    "normaldist_mu": 'import statistics\nprint("{0._mu}".format(statistics.NormalDist()))\n',
    "regression_make": "import statistics\nprint(statistics.linear_regression([1, 2], [1, 2])._make([3, 4]))\n",
    # -- decimal: no shared template contexts, no internals, no host context ------------------
    "decimal_default_context": "import decimal\nprint(decimal.DefaultContext)\n",
    "decimal_extended_context": "from decimal import ExtendedContext\n",
    "decimal_localcontext": "import decimal\nprint(decimal.localcontext)\n",
    "decimal_prec_assignment": "import decimal\ndecimal.getcontext().prec = 10**9\n",
    "decimal_context_other_attribute": "import decimal\ndecimal.getcontext().x = 1\n",
    "decimal_context_private_attribute": "import decimal\nc = decimal.getcontext()\nc._fm_x = 1\n",
    "decimal_decimal_attribute": "import decimal\nd = decimal.Decimal(1)\nd.real = 2\n",
    "decimal_huge_prec_context": "import decimal\ndecimal.Context(prec=10**9)\n",
    "decimal_class": 'import decimal\nprint("{0.__class__.__mro__}".format(decimal.Decimal(1)))\n',
    "decimal_context_reduce": 'import decimal\nprint("{0.__reduce__}".format(decimal.getcontext()))\n',
    "decimal_c_module": 'import decimal\nprint("{0._decimal}".format(decimal))\n',
    "decimal_signal_dict_internals": 'import decimal\nprint("{0._as_dict}".format(decimal.getcontext().flags))\n',
    "decimal_method_base": 'import decimal\nprint("{0.exp.__globals__}".format(decimal.Decimal(1)))\n',
    # -- textwrap, pprint, queue ----------------------------------------------------------------
    "textwrap_pattern": 'import textwrap\nprint("{0.wordsep_re}".format(textwrap.TextWrapper()))\n',
    "textwrap_pattern_static": "import textwrap\nprint(textwrap.TextWrapper().wordsep_re)\n",
    "textwrap_class_pattern": 'import textwrap\nprint("{0.wordsep_re}".format(textwrap.TextWrapper))\n',
    "textwrap_trans": 'import textwrap\nprint("{0.unicode_whitespace_trans}".format(textwrap.TextWrapper()))\n',
    "textwrap_set_pattern": "import textwrap\nw = textwrap.TextWrapper()\nw.wordsep_re = 1\n",
    "textwrap_set_private": "import textwrap\nw = textwrap.TextWrapper()\nw._fm_x = 1\n",
    "textwrap_private": 'import textwrap\nprint("{0._split}".format(textwrap.TextWrapper()))\n',
    "pprint_stream": "import pprint\npprint.pprint([1], stream=1)\n",
    "pprint_dispatch": 'import pprint\nprint("{0._dispatch}".format(pprint.PrettyPrinter()))\n',
    "pprint_safe_repr": 'import pprint\nprint("{0._safe_repr}".format(pprint.PrettyPrinter()))\n',
    "pprint_huge_indent": "import pprint\npprint.pprint([[1, 2]] * 3, indent=10**12, width=1)\n",
    "queue_internal": 'import queue\nprint("{0._fm_items}".format(queue.SimpleQueue()))\n',
    "queue_mutex": 'import queue\nprint("{0.mutex}".format(queue.Queue()))\n',
    "queue_blocking_get": "import queue\nqueue.Queue().get()\n",
    "queue_blocking_put": "import queue\nq = queue.Queue(1)\nq.put(1)\nq.put(2)\n",
    "queue_join": "import queue\nq = queue.Queue()\nq.put(1)\nq.join()\n",
    "queue_copy": "import copy, queue\ncopy.deepcopy(queue.Queue())\n",
    "regression_type": "import statistics\nr = statistics.linear_regression([1, 2], [1, 2])\nprint(type(r)(1, 2))\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "NameError", "KeyError",
            "RuntimeError")
    assert "0x" not in outcome.output


RUNAWAYS = {
    "textwrap_many": "import textwrap\ntext = 'word ' * 50_000\nfor i in range(10):\n    textwrap.wrap(text, 8)",
    "pprint_many": "import pprint\nrow = list(range(100_000))\nfor i in range(10):\n    pprint.pformat(row)",
    # a context at the highest precision allowed: each expensive operation is charged first
    **{f"decimal_{op}": ("import decimal\ndecimal.setcontext(decimal.Context(prec=100_000))\n"
                         f"print(decimal.Decimal(3).{op}())") for op in ("exp", "ln", "log10", "sqrt")},
    "decimal_power": ("import decimal\ndecimal.setcontext(decimal.Context(prec=100_000))\n"
                      "print(decimal.Decimal(3) ** decimal.Decimal('0.5'))"),
    "decimal_context_power": ("import decimal\nc = decimal.Context(prec=100_000)\n"
                              "print(c.power(decimal.Decimal(3), decimal.Decimal('0.5')))"),
    "decimal_context_exp": "import decimal\nc = decimal.Context(prec=100_000)\nprint(c.exp(decimal.Decimal(3)))",
    # a huge exponent turned into an integer
    "decimal_int": 'import decimal\nprint(int(decimal.Decimal("1e999999")))',
    "decimal_floor": 'import decimal, math\nprint(math.floor(decimal.Decimal("1e999999")))',
    "decimal_round": 'import decimal\nprint(round(decimal.Decimal("1e999999")))',
    "decimal_ratio": 'import decimal\nprint(decimal.Decimal("1e-999999").as_integer_ratio())',
    "statistics_mean_endless": "import statistics\nfrom itertools import count\nstatistics.mean(count())",
    "statistics_big": "import statistics\nrow = list(range(100_000))\nfor i in range(10):\n    statistics.fmean(row)",
    "nsmallest_endless": "import heapq\nfrom itertools import count\nheapq.nsmallest(1, count())",
    "nlargest_endless": "import heapq\nfrom itertools import count\nheapq.nlargest(1, count())",
    "merge_endless": ("import heapq\nfrom itertools import dropwhile, repeat\n"
                      "print(next(dropwhile(bool, heapq.merge(repeat(1)))))"),
    "merge_of_empties_endless": ("import heapq\nfrom itertools import chain, repeat\n"
                                 "print(next(heapq.merge(chain.from_iterable(repeat(())))))"),
    "heapify_big": "import heapq\nh = [0] * 5_000_000\nfor i in range(10):\n    heapq.heapify(h)",
    "deepcopy_big": "import copy\nrow = [0] * 100_000\nfor i in range(10):\n    copy.deepcopy(row)",
    "copy_big": "import copy\nrow = [0] * 100_000\nfor i in range(10):\n    copy.copy(row)",
    "template_many_fields": ("import string\nt = string.Template('$a' * 500_000)\n"
                             "for i in range(10):\n    t.substitute(a='')"),
}
HUGE = {
    "formatter_width": 'import string\nprint(len(string.Formatter().format("{:>{}}", "x", 10**9)))',
    "formatter_precision": 'import string\nprint(len(string.Formatter().format("{:.{}f}", 1.5, 10**9)))',
    "textwrap_assigned_indent": ("import textwrap\nw = textwrap.TextWrapper(width=10)\n"
                                 "w.subsequent_indent = 'x' * 10_000\nprint(len(w.wrap('a' * 100_000)))"),
    "textwrap_indent": "import textwrap\nprint(len(textwrap.indent('a\\n' * 100_000, 'x' * 10_000)))",
    # an indent wider than the width: one character per line, each after the whole indent
    "textwrap_wrap_indents": ("import textwrap\n"
                              "print(len(textwrap.wrap('a' * 100_000, width=10, subsequent_indent='x' * 10_000)))"),
    "textwrap_tabsize": "import textwrap\nprint(textwrap.wrap('a\\tb' * 100, tabsize=10**9))",
    "decimal_format_f": 'import decimal\nprint(len(format(decimal.Decimal("1e999999999"), "f")))',
    "decimal_format_precision": 'import decimal\nprint(len(f"{decimal.Decimal(1):.999999999f}"))',
    "decimal_fraction": 'import decimal, fractions\nprint(fractions.Fraction(decimal.Decimal("1e999999999")))',
    "fraction_exponent_string": 'from fractions import Fraction\nprint(Fraction("1e999999999"))',
    "fraction_negative_exponent": 'from fractions import Fraction\nprint(Fraction("1e-99999999999999999999"))',
    "fraction_pow": "from fractions import Fraction\nprint(Fraction(3, 2) ** 10**9)",
    "fraction_rpow": "from fractions import Fraction\nprint(3 ** Fraction(10**10))",
    "fraction_round": "from fractions import Fraction\nprint(round(Fraction(1, 3), 10**9))",
    "quantiles_n": "import statistics\nprint(statistics.quantiles([1, 2, 3], n=10**10))",
    "normaldist_quantiles_n": "import statistics\nprint(statistics.NormalDist().quantiles(10**10))",
    "template_substitute": "import string\nprint(len(string.Template('$x' * 10_000).substitute(x='a' * 100_000)))",
    "template_safe_substitute": ("import string\n"
                                 "print(len(string.Template('$x' * 10_000).safe_substitute(x='a' * 100_000)))"),
}


@pytest.mark.parametrize("name", sorted(RUNAWAYS))
def test_work_in_c_uses_fuel(name: str) -> None:
    outcome = attempt(RUNAWAYS[name], limits=Limits(fuel=300_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted"), outcome


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_results_are_refused_first(name: str) -> None:
    outcome = attempt(HUGE[name])
    assert outcome.error_line is not None and outcome.error_line.startswith("MemoryLimitExceeded"), outcome


def test_each_program_has_its_own_decimal_context() -> None:
    import decimal

    first = attempt("import decimal\ndecimal.setcontext(decimal.Context(prec=5))\nprint(decimal.Decimal(1) / 3)\n")
    second = attempt("import decimal\nprint(decimal.Decimal(1) / 3, decimal.getcontext().flags[decimal.Inexact])\n")
    assert first.output == "0.33333\n" and second.output == "0.3333333333333333333333333333 True\n"
    assert decimal.getcontext().prec == 28  # the host's own is left as it was


def test_queue_get_on_empty_says_it_would_block_forever() -> None:
    outcome = attempt("import queue\nqueue.Queue().get()\n")
    assert outcome.error_line is not None and outcome.error_line.startswith("RuntimeError: get() on an empty queue "
                                                                            "would block forever")


def test_pprint_writes_no_addresses_or_ids() -> None:
    outcome = attempt("import pprint\ndef f():\n    pass\nx = [f, {'k': f}]\nx.append(x)\npprint.pprint(x)\n"
                      "print(pprint.saferepr(x), pprint.pformat(x, width=10))\n")
    assert outcome.error_line is None and "0x" not in outcome.output and "id=" not in outcome.output, outcome
    assert "<function f>" in outcome.output and "<Recursion on list>" in outcome.output


def test_deepcopy_of_a_deep_structure_does_not_recurse_on_the_host() -> None:
    outcome = attempt("import copy\nx = []\nfor i in range(100_000):\n    x = [x, i]\n"
                      "y = copy.deepcopy(x)\nn = 0\nwhile y:\n    y = y[0]\n    n += 1\nprint(n)\n")
    assert outcome.error_line is None and outcome.output == "100000\n", outcome


def test_deepcopy_memo_shows_no_addresses() -> None:
    outcome = attempt("import copy\nmemo = {}\ncopy.deepcopy([[1], [2]], memo)\nprint(memo)\n")
    assert outcome.error_line is None and outcome.output == "{}\n", outcome


def test_template_and_formatter_write_no_addresses() -> None:
    outcome = attempt("import string\ndef f():\n    pass\n"
                      "print(string.Template('$f ${f}').substitute(f=f), string.Formatter().format('{0} {0!r}', f))\n")
    assert outcome.error_line is None and outcome.output == "<function f> <function f> <function f> <function f>\n"
