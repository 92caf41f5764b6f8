"""``fxprune`` command line. Library code logs; this package prints."""

from __future__ import annotations

import importlib
import logging

from rich.console import Console
from rich.markup import escape

from ..errors import FxPruneError
from ..plotting import missing_extra
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 done, 1 the input is wrong (a named error on stderr; the
    traceback only with --verbose), 2 a usage error (argparse)."""
    args = build_parser().parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        module, _, name = args.handler.partition(":")
        try:
            handler = getattr(importlib.import_module(f"{__name__}.{module}"), name)  # the verb's imports only
            return handler(args, console)
        except ImportError as exc:
            hint = missing_extra(exc)
            if hint is None:
                raise
            raise hint from exc
    except (FxPruneError, OSError) as exc:
        if args.verbose:
            errors.print_exception()
        message = str(exc) if isinstance(exc, FxPruneError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --verbose
        if args.verbose:
            errors.print_exception()
        errors.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))}. Rerun with --verbose for the "
                     "traceback and report it.", markup=True, highlight=False, soft_wrap=True)
        return 1
