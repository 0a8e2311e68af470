"""`textwrap` for Flowmetal programs: `wrap`, `fill`, `shorten`, `dedent`, `indent` and
`TextWrapper`.

They are CPython's (pure Python: the same lines, errors and options). What ours add: a tick per
character of the text (the work is done in host Python, which no tick of the program's counts),
and a check of the result's size before it is built — `indent()` with a long prefix on many
lines, a wrapper's indents repeated on every line, tabs expanded to a huge `tabsize`. A
`TextWrapper` is kept across waits (its options are plain data, which a program may also assign:
`wrapper.width = 30`); its compiled patterns stay out of reach.
"""

from __future__ import annotations

import textwrap as _tw
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.stdlib.common import charge, check_size, looks_like

__all__ = ["TextWrapper", "members", "register_codec"]

OPTIONS = ("width", "initial_indent", "subsequent_indent", "expand_tabs", "replace_whitespace",
           "fix_sentence_endings", "break_long_words", "drop_whitespace", "break_on_hyphens", "tabsize", "max_lines",
           "placeholder")


def _text_len(text: Any) -> int:
    return len(text) if isinstance(text, str) else 0


class TextWrapper(_tw.TextWrapper):
    """Object for wrapping/filling text (CPython's, with its size checked first)."""

    def _fm_check(self, text: Any) -> None:
        n = _text_len(text)
        charge(n)
        if not isinstance(text, str):
            return
        size = n
        if self.expand_tabs and type(self.tabsize) is int and self.tabsize > 1:
            size += text.count("\t") * self.tabsize
            check_size(size, "TextWrapper.wrap()")
        indents = [s for s in (self.initial_indent, self.subsequent_indent, self.placeholder) if isinstance(s, str)]
        longest = max(map(len, indents), default=0)
        if longest and type(self.width) is int:
            # a line (but the last of a paragraph) holds at least about half of what fits after its indent
            lines = min(size + 1, 2 * size // max(1, self.width - longest) + text.count("\n") + 2)
            check_size(size + lines * longest, "TextWrapper.wrap()")

    def wrap(self, text: Any) -> list[str]:
        """Wrap a single paragraph of text, returning a list of wrapped lines."""
        self._fm_check(text)
        return super().wrap(text)

    def fill(self, text: Any) -> str:
        """Fill a single paragraph of text, returning a new string."""
        self._fm_check(text)
        return super().fill(text)

    def __repr__(self) -> str:
        return "<textwrap.TextWrapper object>"


def wrap(text: Any, width: Any = 70, **kwargs: Any) -> list[str]:
    """Wrap a single paragraph of text, returning a list of wrapped lines."""
    return TextWrapper(width=width, **kwargs).wrap(text)


def fill(text: Any, width: Any = 70, **kwargs: Any) -> str:
    """Fill a single paragraph of text, returning a new string."""
    return TextWrapper(width=width, **kwargs).fill(text)


def shorten(text: Any, width: Any, **kwargs: Any) -> str:
    """Collapse and truncate the given text to fit in the given width."""
    w = TextWrapper(width=width, max_lines=1, **kwargs)
    if isinstance(text, str):
        charge(len(text))
        return w.fill(" ".join(text.strip().split()))
    return _tw.shorten(text, width, **kwargs)


def dedent(text: Any) -> str:
    """Remove any common leading whitespace from every line in `text`."""
    charge(_text_len(text))
    return _tw.dedent(text)


def indent(text: Any, prefix: Any, predicate: Any = None) -> str:
    """Adds 'prefix' to the beginning of selected lines in 'text'."""
    if isinstance(text, str) and isinstance(prefix, str):
        lines = text.count("\n") + 1
        charge(len(text) + lines)
        check_size(len(text) + lines * len(prefix), "indent()")
    return _tw.indent(text, prefix, predicate)


def members() -> dict[str, Any]:
    return {"wrap": wrap, "fill": fill, "shorten": shorten, "dedent": dedent, "indent": indent,
            "TextWrapper": TextWrapper}


def _state(w: TextWrapper) -> list[Any]:
    return [getattr(w, name) for name in OPTIONS]


def _fill(w: TextWrapper, state: list[Any]) -> None:
    TextWrapper.__init__(w, **dict(zip(OPTIONS, state, strict=True)))


def register_codec(codec: Any) -> None:
    codec.register(TextWrapper, "textwrap.TextWrapper", state=_state, new=lambda: TextWrapper.__new__(TextWrapper),
                   fill=_fill)


def _set_option(w: TextWrapper, name: str, value: Any) -> None:
    """`wrapper.width = 30` and the other options (what CPython's programs do to reuse a wrapper);
    sizes are checked when it wraps."""
    if name not in OPTIONS:
        raise AttributeError(f"'textwrap.TextWrapper' object has no attribute '{name}'")
    setattr(w, name, value)


def _register() -> None:
    looks_like(TextWrapper, "textwrap", "TextWrapper")
    register_kind(TextWrapper, "textwrap.TextWrapper")
    from flowmetal.machine.classes import SETTERS

    SETTERS[TextWrapper] = _set_option
    from flowmetal.machine.stdlib.copy import Copier, register_copier

    def copy_of(w: TextWrapper) -> TextWrapper:
        return TextWrapper(**dict(zip(OPTIONS, _state(w), strict=True)))

    register_copier(TextWrapper, Copier(shallow=copy_of, parts=_state, new=lambda w: TextWrapper.__new__(TextWrapper),
                                        fill=lambda shell, w, parts: _fill(shell, parts)))


_register()
