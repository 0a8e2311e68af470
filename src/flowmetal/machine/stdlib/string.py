"""`string` for Flowmetal programs: the constants, `capwords`, `Template` and `Formatter`.

* `Template` is CPython's (its pattern, its errors, `get_identifiers`, `is_valid`), with
  values turned into text by `fm_str` (CPython's `str()` would show a function's address),
  the result's size checked before it is joined, and a tick per placeholder. Its identifiers
  are names in a mapping, never attributes, so it reads nothing a program could not.
* `Formatter` is `str.format`'s own safe formatter (`show._Formatter`): an attribute field
  (`{0.name}`) is read through the allow-list exactly as in `str.format`, so
  `"{0.__class__}"`-style reads stay refused. `parse()` gives a list iterator (CPython's is a
  host iterator no snapshot could write).
* Neither can be subclassed by a program (that comes with classes).
"""

from __future__ import annotations

import re
import string as _string
from collections import ChainMap as _ChainMap
from typing import Any

from flowmetal.machine.access import fm_getattr, register_kind
from flowmetal.machine.show import _Formatter, fm_str, register_leaf
from flowmetal.machine.stdlib.common import charge, check_size, looks_like

__all__ = ["Formatter", "Template", "members", "register_codec"]

_SENTINEL: dict[str, Any] = {}
# a format spec's width and precision (the size of what it writes is at least their sum)
_WIDTH = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<prec>\d+))?", re.S)


class Template(_string.Template):
    """A string class for supporting $-substitutions."""

    def _fm_sub(self, mapping: Any, kws: dict[str, Any], safe: bool) -> str:
        if mapping is _SENTINEL:
            mapping = kws
        elif kws:
            mapping = _ChainMap(kws, mapping)
        template = self.template
        if not isinstance(template, str):
            raise TypeError(f"expected string or bytes-like object, got '{type(template).__name__}'")
        pieces: list[str] = []
        size = 0
        last = 0
        for mo in self.pattern.finditer(template):
            charge(1)
            named = mo.group("named") or mo.group("braced")
            if named is not None:
                if safe:
                    try:
                        text = fm_str(mapping[named])
                    except KeyError:
                        text = mo.group()
                else:
                    text = fm_str(mapping[named])
            elif mo.group("escaped") is not None:
                text = self.delimiter
            elif mo.group("invalid") is not None:
                if not safe:
                    self._invalid(mo)  # type: ignore[attr-defined]
                text = mo.group()
            else:
                raise ValueError("Unrecognized named group in pattern", self.pattern)
            pieces.append(template[last:mo.start()])
            pieces.append(text)
            size += mo.start() - last + len(text)
            last = mo.end()
        pieces.append(template[last:])
        size += len(template) - last
        check_size(size, "Template.substitute()")
        return "".join(pieces)

    def substitute(self, mapping: Any = _SENTINEL, /, **kws: Any) -> str:
        return self._fm_sub(mapping, kws, False)

    def safe_substitute(self, mapping: Any = _SENTINEL, /, **kws: Any) -> str:
        return self._fm_sub(mapping, kws, True)

    def __repr__(self) -> str:
        return "<string.Template object>"


class Formatter(_Formatter):
    """`string.Formatter`: `format`, `vformat`, `parse` and the steps they take
    (`get_field`, `get_value`, `convert_field`, `format_field`, `check_unused_args`), with
    attribute fields read through the allow-list."""

    def __init__(self) -> None:
        super().__init__(fm_getattr)

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            return args[key]
        return kwargs[key]

    def format_field(self, value: Any, format_spec: Any) -> Any:
        if isinstance(format_spec, str):
            m = _WIDTH.match(format_spec)
            if m is not None:
                check_size(int(m["width"] or 0) + int(m["prec"] or 0), "Formatter.format_field()")
        return super().format_field(value, format_spec)

    def parse(self, format_string: Any) -> Any:
        parsed = list(_string.Formatter.parse(self, format_string))
        charge(len(parsed))
        return iter(parsed)

    def vformat(self, format_string: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(format_string, str):
            charge(len(format_string) // 8)
        return super().vformat(format_string, args, kwargs)

    def __repr__(self) -> str:
        return "<string.Formatter object>"


def capwords(s: Any, sep: Any = None) -> str:
    """capwords(s [,sep]) -> string (split, capitalize each word, join)."""
    if isinstance(s, str):
        charge(len(s))
    return _string.capwords(s, sep)


_CONSTANTS = ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits", "printable",
              "punctuation", "whitespace")


def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(_string, name) for name in _CONSTANTS}
    out.update(capwords=capwords, Template=Template, Formatter=Formatter)
    return out


def register_codec(codec: Any) -> None:
    codec.register(Template, "string.Template", state=lambda t: [t.template], build=lambda s: Template(s[0]))
    codec.register(Formatter, "string.Formatter", state=lambda f: [], build=lambda s: Formatter())


def _register() -> None:
    looks_like(Template, "string", "Template")
    looks_like(Formatter, "string", "Formatter")
    register_kind(Template, "string.Template")
    register_kind(Formatter, "string.Formatter")
    register_leaf(Template)
    register_leaf(Formatter)
    from flowmetal.machine.stdlib.copy import Copier, register_copier

    register_copier(Template, Copier(shallow=lambda t: Template(t.template), parts=lambda t: [t.template],
                                     new=lambda t: Template.__new__(Template), fill=_fill_template))
    register_copier(Formatter, Copier(shallow=lambda f: Formatter(), parts=lambda f: (),
                                      new=lambda f: Formatter(), fill=lambda s, f, p: None))


def _fill_template(shell: Any, t: Any, parts: list[Any]) -> None:
    shell.template = parts[0]


_register()
