"""The `flowmetal` command line.

Exit codes: 0 success; 1 the program raised an uncaught exception (or hit a
limit); 2 the program is invalid or the command was used wrongly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowmetal import __version__
from flowmetal.errors import CheckFailed, FlowmetalError, UsageError


def _read_source(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


def _parse_args(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--args: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(value, dict):
        raise UsageError("--args: expected a JSON object of keyword arguments, e.g. '{\"n\": 3}'")
    return value


class _Group(click.Group):
    """Maps Flowmetal's own errors to one clear line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CheckFailed as e:
            for d in e.diagnostics:
                click.echo(d.format(), err=True)
            sys.exit(e.exit_code)
        except FlowmetalError as e:
            click.echo(f"flowmetal: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="flowmetal")
def main() -> None:
    """Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Validate programs; print every error and warning as FILE:LINE:COL."""
    from flowmetal.lang.check import check_source, has_errors
    from flowmetal.lang.program import default_modules

    failed = False
    for path in files:
        source = _read_source(path)
        _, diags = check_source(source, path, modules=default_modules())
        for d in diags:
            click.echo(d.format(), err=True)
        failed = failed or has_errors(diags)
    sys.exit(2 if failed else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--args", "raw_args", help="The program's arguments as a JSON object (passed to main()).")
def run(file: str, raw_args: str | None) -> None:
    """Run a program; its output goes to stdout, an uncaught exception's traceback to stderr."""
    from flowmetal.machine.api import compile_program, run_program

    args = _parse_args(raw_args)
    program = compile_program(_read_source(file), file)
    for d in program.diagnostics:
        click.echo(d.format(), err=True)

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    result = run_program(program, args, on_output=emit)
    if result.error_line is not None:
        click.echo(result.traceback or result.error_line, err=True, nl=False)
        sys.exit(1)
    if result.result is not None:
        try:
            click.echo(json.dumps(result.result))
        except (TypeError, ValueError):
            click.echo(repr(result.result))
