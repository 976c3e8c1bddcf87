"""The ``fmpretrain`` command line: one entry point, one sub-command per stage.

The parser is :mod:`fmpretrain.cli.parser`; the commands live in :mod:`~fmpretrain.cli.data`,
:mod:`~fmpretrain.cli.training` and :mod:`~fmpretrain.cli.evaluation`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from fmpretrain.cli.parser import add_print_config, build_parser, parse_args

__all__ = ["add_print_config", "build_parser", "main", "parse_args"]


#: The project's loggers, whose INFO records (progress: epochs, folds, resumes) a command shows.
PROGRESS_LOGGERS = ("fmpretrain", "data_pipeline")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test capture replaces it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; sys.stderr is used instead
        pass


def show_progress() -> None:
    """Show the project's INFO log records on stderr, one message per line (once)."""
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, _StderrHandler) for h in logger.handlers):
            continue
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fmpretrain`` command line; return its exit status."""
    args = parse_args(argv)
    show_progress()
    if args.command is None:
        build_parser().print_help()
        return 0
    from fmpretrain.config import config_yaml
    from fmpretrain.extras import MissingExtraError, extra_of, missing_extra_message

    try:
        if getattr(args, "print_config", False):
            sys.stdout.write(config_yaml(args.resolve_config(args)))
            return 0
        return int(args.func(args) or 0)
    except MissingExtraError as err:
        print(err, file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        extra = extra_of(err.name)
        if extra is None:
            raise
        print(missing_extra_message(args.command, extra), file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fmpretrain {args.command}: error: {message}", file=sys.stderr)
        return 2
