"""The names a Flowmetal program can see without importing anything, and the
host names it deliberately cannot (with the reason shown to the user).

Both the checker and the machine read these tables, so a built-in is defined
in exactly one place.
"""

from __future__ import annotations

import ast

# Functions and types available to every program.
BUILTIN_FUNCTIONS: frozenset[str] = frozenset(
    {
        "print", "len", "range", "enumerate", "zip", "map", "filter", "sorted",
        "reversed", "min", "max", "sum", "any", "all", "abs", "round", "divmod",
        "pow", "int", "float", "str", "bool", "list", "tuple", "dict", "set",
        "frozenset", "bytes", "isinstance", "type", "repr", "ord", "chr", "hex",
        "bin", "oct", "iter", "next", "format", "callable", "ascii", "slice",
        "object", "issubclass", "super", "property", "staticmethod", "classmethod",
    }
)

# Exception types available to every program (host exception classes, so that
# messages, `args` and `str()` match CPython exactly).
BUILTIN_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "BaseException", "Exception", "ArithmeticError", "LookupError",
        "ValueError", "TypeError", "KeyError", "IndexError", "ZeroDivisionError",
        "RuntimeError", "AssertionError", "NameError", "UnboundLocalError",
        "AttributeError", "StopIteration", "RecursionError", "OverflowError",
        "NotImplementedError", "MemoryError", "UnicodeError", "UnicodeDecodeError",
        "UnicodeEncodeError", "ImportError", "ModuleNotFoundError", "GeneratorExit",
        "OSError", "IOError", "EnvironmentError",  # the last two are CPython's aliases of OSError
    }
)

BUILTIN_CONSTANTS: frozenset[str] = frozenset({"None", "True", "False", "NotImplemented", "Ellipsis"})

BUILTIN_NAMES: frozenset[str] = BUILTIN_FUNCTIONS | BUILTIN_EXCEPTIONS | BUILTIN_CONSTANTS

# Globals every program starts with: `__name__` is "__main__" at the top level of the program
# (so `if __name__ == "__main__":` runs), as in a script CPython runs.
MODULE_GLOBALS: frozenset[str] = frozenset({"__name__"})
MAIN_NAME = "__main__"


def has_main_guard(tree: ast.Module) -> bool:
    """Whether the program's top level has an `if` testing `__name__` (`if __name__ == "__main__":`).
    Such a program is a script that calls what it wants itself: the runtime does not call its
    `main()` on its own."""
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__"
                                            for n in ast.walk(stmt.test)):
            return True
    return False

_OUTSIDE = "programs reach the outside world only through connectors"
_DYNAMIC = "Flowmetal programs are checked and compiled ahead of running, so code cannot be made at run time"

# Host built-ins that Flowmetal lacks on purpose, and why.
FORBIDDEN_BUILTINS: dict[str, str] = {
    "open": f"'open' is not available: {_OUTSIDE}",
    "input": f"'input' is not available: {_OUTSIDE} (use receive() in the durable runtime)",
    "eval": f"'eval' is not available: {_DYNAMIC}",
    "exec": f"'exec' is not available: {_DYNAMIC}",
    "compile": f"'compile' is not available: {_DYNAMIC}",
    "__import__": "'__import__' is not available: use 'import' of a Flowmetal module",
    "globals": "'globals' is not available: a program's state is only reachable through its variables",
    "locals": "'locals' is not available: a program's state is only reachable through its variables",
    "vars": "'vars' is not available: a program's state is only reachable through its variables",
    "id": "'id' is not available: object addresses are not deterministic across machines",
    "hash": "'hash' is not available: hash values are not deterministic across processes",
    "exit": "'exit' is not available: return from main() or raise an exception to end a program",
    "quit": "'quit' is not available: return from main() or raise an exception to end a program",
    "breakpoint": f"'breakpoint' is not available: {_OUTSIDE}",
    "help": f"'help' is not available: {_OUTSIDE}",
    "memoryview": "'memoryview' is not available in Flowmetal",
    "bytearray": "'bytearray' is not available in Flowmetal",
    "getattr": "'getattr' is not available: attributes are named statically in Flowmetal",
    "setattr": "'setattr' is not available: attributes are named statically in Flowmetal",
    "delattr": "'delattr' is not available: attributes are named statically in Flowmetal",
    "hasattr": "'hasattr' is not available: attributes are named statically in Flowmetal",
    "dir": "'dir' is not available in Flowmetal",
    "aiter": "'aiter' is not available: async is not supported",
    "anext": "'anext' is not available: async is not supported",
}

# Pure standard modules a program may import. Durable actions come from the
# `flowmetal` module, whose contents the host (the durable runtime) supplies.
STD_MODULES: frozenset[str] = frozenset({
    "json", "math", "re",
    "typing",
    "itertools",
    "collections",
    "collections.abc",
    "base64",
    "binascii",
    "hashlib",
    "hmac",
    "urllib",
    "urllib.parse",
    "operator",
    "functools",
    "dataclasses",
    "enum",
    "heapq",
    "bisect",
    "copy",
    "string",
    "fractions",
    "statistics",
    "datetime",
    "zoneinfo",
    "decimal",
    "time",
    "random",
    "uuid",
    "calendar",
    "textwrap",
    "pprint",
    "queue",
})

# Standard (and well-known) modules whose purpose is input and output: importing one is refused
# with the reason that programs reach the world only through connectors.
IO_MODULES: frozenset[str] = frozenset({
    "os", "sys", "io", "socket", "socketserver", "subprocess", "pathlib", "shutil", "glob", "fnmatch",
    "tempfile", "signal", "select", "selectors", "ssl", "http", "ftplib", "smtplib", "poplib", "imaplib",
    "telnetlib", "xmlrpc", "webbrowser", "threading", "multiprocessing", "concurrent", "asyncio", "sqlite3",
    "dbm", "shelve", "pickle", "marshal", "ctypes", "mmap", "fcntl", "pty", "tty", "termios", "resource",
    "platform", "getpass", "fileinput", "logging", "requests", "httpx", "aiohttp", "urllib3", "psycopg",
    "psycopg2", "builtins", "importlib", "inspect", "gc", "atexit", "faulthandler", "code", "runpy",
})

# Dunder attributes a program may read.
ALLOWED_DUNDERS: frozenset[str] = frozenset({"__name__", "__cause__", "__context__"})
